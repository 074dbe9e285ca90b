"""The operators' builtin parameters (TfLiteConvParams and the like) as C initializers, for flash.

TFLM parses each operator's options into a small struct that it keeps in the tensor arena for as long
as the model is set up. picotflm's firmware parses them as TFLM does, then looks the result up in these
tables, written here from the same flatbuffer: when an equal entry is found, the op points at it in
flash and the arena holds nothing for it; else the arena copy is kept, as TFLM would (firmware
``kernels/flash_params.h``). Each table lists the distinct values of one struct over every variant's ops.
"""
from __future__ import annotations

from typing import Any

from pipeline.tflite.reader import TFLITE_TYPES, enum_names, load_tflite

# Schema Padding -> TfLitePadding (TFLM's ConvertPadding).
_PADDING = {0: "kTfLitePaddingSame", 1: "kTfLitePaddingValid"}
# Schema ActivationFunctionType -> TfLiteFusedActivation (TFLM's ConvertActivation).
_ACTIVATION = {0: "kTfLiteActNone", 1: "kTfLiteActRelu", 2: "kTfLiteActReluN1To1", 3: "kTfLiteActRelu6",
               4: "kTfLiteActTanh", 5: "kTfLiteActSignBit"}
# Schema FullyConnectedOptionsWeightsFormat -> TfLiteFullyConnectedWeightsFormat.
_WEIGHTS_FORMAT = {0: "kTfLiteFullyConnectedWeightsFormatDefault",
                   1: "kTfLiteFullyConnectedWeightsFormatShuffled4x16Int8"}

# C struct of each builtin operator handled, and TFLM's parser of it.
STRUCTS = {"CONV_2D": ("TfLiteConvParams", "ParseConv2D"),
           "DEPTHWISE_CONV_2D": ("TfLiteDepthwiseConvParams", "ParseDepthwiseConv2D"),
           "FULLY_CONNECTED": ("TfLiteFullyConnectedParams", "ParseFullyConnected"),
           "SOFTMAX": ("TfLiteSoftmaxParams", "ParseSoftmax"),
           "MEAN": ("TfLiteReducerParams", "ParseReducer")}


def _bool(v: Any) -> str:
    return "true" if v else "false"


def _float(v: float) -> str:
    import numpy as np

    return float(np.float32(v)).hex() + "f"  # exact: the float32 the flatbuffer holds


def initializer(op_name: str, options: Any, tensor_types: dict[int, str]) -> str | None:
    """The C initializer TFLM's parser of ``op_name`` produces from ``options`` (None: the struct
    zeroed, as the parser leaves it), or None when a value has no known C name."""
    o = options
    try:
        if op_name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if o is None:
                return "{}"
            fields = [_PADDING[o.padding], str(o.strideW), str(o.strideH)]
            if op_name == "DEPTHWISE_CONV_2D":
                fields.append(str(o.depthMultiplier))
            fields += [_ACTIVATION[o.fusedActivationFunction], str(o.dilationWFactor), str(o.dilationHFactor)]
            if op_name == "CONV_2D":
                fields.append(TFLITE_TYPES[tensor_types[o.quantizedBiasType]][0])
            return "{" + ", ".join(fields) + "}"
        if op_name == "FULLY_CONNECTED":
            if o is None:
                return "{}"
            return "{" + ", ".join([_ACTIVATION[o.fusedActivationFunction], _WEIGHTS_FORMAT[o.weightsFormat],
                                    _bool(o.keepNumDims), _bool(o.asymmetricQuantizeInputs),
                                    TFLITE_TYPES[tensor_types[o.quantizedBiasType]][0]]) + "}"
        if op_name == "SOFTMAX":
            return "{}" if o is None else "{" + _float(o.beta) + "}"
        if op_name == "MEAN":
            return "{}" if o is None else "{" + _bool(o.keepDims) + "}"
    except KeyError:
        return None
    return None


def builtin_params(tflites: list[bytes]) -> list[dict[str, Any]]:
    """Per struct of :data:`STRUCTS` that the models use: ``{"op", "struct", "parser", "entries"}``, the
    distinct initializers over every operator of every subgraph of every model, in first-use order."""
    tables: dict[str, dict[str, Any]] = {}
    for data in tflites:
        schema, model = load_tflite(data)
        op_names = enum_names(schema.BuiltinOperator)
        tensor_types = enum_names(schema.TensorType)
        codes = [max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)) for oc in model.operatorCodes]
        for sg in model.subgraphs:
            for op in sg.operators or []:
                name = op_names.get(codes[op.opcodeIndex])
                if name not in STRUCTS:
                    continue
                value = initializer(name, op.builtinOptions, tensor_types)
                struct, parser = STRUCTS[name]
                t = tables.setdefault(name, {"op": name, "struct": struct, "parser": parser, "entries": []})
                if value is not None and value not in t["entries"]:
                    t["entries"].append(value)
    return [t for t in tables.values() if t["entries"]]
