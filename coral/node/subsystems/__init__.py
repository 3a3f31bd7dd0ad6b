"""The node's subsystems, in start order; ``build_subsystems`` decides what a node runs."""

from coral.node.subsystems.base import Subsystem, build_subsystems, wait_budget

__all__ = ["Subsystem", "build_subsystems", "wait_budget"]
