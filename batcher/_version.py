"""The version, in a leaf module so that low modules never import the package face."""

__version__ = "0.1.0"
