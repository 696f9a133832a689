"""External oracles built at test time from upstream sources (nothing upstream is committed)."""
