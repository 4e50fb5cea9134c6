"""audio stage of stylecraft."""
