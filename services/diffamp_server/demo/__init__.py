"""The built-in demo pair: a tiny base model and a post-trained version with one planted rare behaviour."""
