"""The HTTP layer: the app factory, endpoints, protocol codecs, errors, limits and serving.

It imports neither torch nor Pillow nor NumPy: models are reached through the
service layer's registry, which the app holds.
"""
