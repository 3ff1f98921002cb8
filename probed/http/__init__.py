"""The HTTP room: the client session and its phase timing, TLS contexts, redirects,
peer facts (TLS, HTTP version), exception classification and ``traceparent``.

Used alike by the probe kinds (``probed.probes``) and the stream watchers
(``probed.stream``); nothing here knows about either.
"""
