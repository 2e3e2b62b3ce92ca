"""The pure core: the action model, its lifecycle, and the clock and id seams.

Nothing here imports a framework, a database driver or an HTTP library.
"""
