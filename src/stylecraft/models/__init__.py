"""models stage of stylecraft."""
