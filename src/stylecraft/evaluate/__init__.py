"""evaluate stage of stylecraft."""
