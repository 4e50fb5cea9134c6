"""train stage of stylecraft."""
