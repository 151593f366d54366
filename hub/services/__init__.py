"""Use cases of the hub, one module each; adapters call these, never the store directly."""
