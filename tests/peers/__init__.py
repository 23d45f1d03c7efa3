"""Real peer systems started by the test suite (Tryton, ...)."""
