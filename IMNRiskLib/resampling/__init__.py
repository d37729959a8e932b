"""Internal validation: repeated cv and bootstrap optimism."""
