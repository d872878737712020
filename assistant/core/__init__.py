"""The foundation every stage stands on: config, manifests, models, the prompt, records and errors. Imports no stage."""
