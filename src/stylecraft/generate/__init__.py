"""generate stage of stylecraft."""
