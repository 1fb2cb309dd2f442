"""Bringing in weights trained elsewhere: ST-MEM checkpoints."""

from .st_mem import ConversionError, convert_st_mem


__all__ = ["ConversionError", "convert_st_mem"]
