"""coral_sdk: write Coral agents, and host models as agents."""
