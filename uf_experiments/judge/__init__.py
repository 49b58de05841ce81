"""The UltraFeedback judge: prompts built from package templates, parsing that never guesses."""
