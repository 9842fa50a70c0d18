"""The Functions triggers: each parses its trigger, calls the engine and shapes the response."""
