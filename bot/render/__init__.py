"""Pure renderers: models to Block Kit blocks or plain text."""
