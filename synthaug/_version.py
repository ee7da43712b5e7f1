"""The version of synthaug: what modules record in checkpoints and run records import from here, never from the
package entry (which imports them)."""
__version__ = "0.1.0"
