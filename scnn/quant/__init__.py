"""Quantisation: the Brevitas twin of a float model, its integer reference, the QAT workflow."""

from scnn.quant.config import QuantConfig
from scnn.quant.twin import (QuantBlock, QuantLIF, QuantSpecNet, calibrate, floor_ste, leak_shift_for,
                             membrane_percentiles, model_size_bytes, quantize, quantized_from_dict,
                             quantized_to_dict, round_ste)
