"""data stage of stylecraft."""
