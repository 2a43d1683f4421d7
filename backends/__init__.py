"""vecface backends, one module per store (imported as ``vecface.backends``)."""
