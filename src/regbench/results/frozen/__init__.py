"""Code that store migrations run, copied as it was when each migration shipped.

A migration must do tomorrow what it did the day it shipped, so it never calls code that may
change (the engine's run identity, above all): what it needs is copied here and never edited.
"""
