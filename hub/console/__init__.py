"""The operator console: server-rendered pages the hub serves under ``/console``
(docs/CONSOLE.md). Sign-in exchanges an API token for a session cookie; every action
is the same guarded, audited handler the API runs."""
