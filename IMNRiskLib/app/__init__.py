"""The commands: imnrisk cli, train, external validation, pacs, phantom, truth recovery."""
