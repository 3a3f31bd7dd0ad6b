"""``python -m coral`` runs the coral-node CLI."""

from coral.cli import main

main()
