"""Finance rules: the ledger read for the ward's books (exports, daily close, reconciliation, dashboard)."""
