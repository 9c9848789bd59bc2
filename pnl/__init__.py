"""pnl: the idempotent daily portfolio P&L batch (raw SQL on PostgreSQL).

Its SQL and migrations ship inside the package: see pnl.resources.
"""

__version__ = "0.1.0"
