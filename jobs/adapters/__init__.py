"""The runtime's adapters: the ARQ scheduler, the live-update bus, the notifier."""
