"""Server-sent event streams: the incremental decoder, the long-lived watcher and the event hub."""
