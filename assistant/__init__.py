"""The domain assistant: config, models, the one prompt, answering, CLI, app and API."""
