"""The package version, in a module of its own so every layer can read it without importing the
package's face (``flowscope/__init__.py`` imports the layers, so they must not import it)."""

__version__ = "0.1.0"
