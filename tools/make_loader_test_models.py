#!/usr/bin/python3
"""Generates the small ONNX files the loader tests read (tests/data/onnx/): valid models
covering raw_data, typed fields, external data, subgraphs and every attribute kind, and
broken ones (escaping external paths, cycles, truncation, absurd shapes, bad wire types).
Run once with /usr/bin/python3 (needs the onnx package); the outputs are committed so the
tests themselves need no Python. Usage: tools/make_loader_test_models.py [out_dir]"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "onnx")
os.makedirs(OUT, exist_ok=True)

F = TensorProto.FLOAT


def model(graph, opsets=None, ir_version=8):
    m = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", 17)],
                          producer_name="make_loader_test_models")
    m.ir_version = ir_version
    return m


def save(name, m_or_bytes):
    data = m_or_bytes if isinstance(m_or_bytes, bytes) else m_or_bytes.SerializeToString()
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    return data


def add_graph(name, inits=(), extra_nodes=(), value_info=()):
    """y = x + w (float32[2,3]) plus extra nodes/initializers."""
    x = helper.make_tensor_value_info("x", F, ["batch", 3])
    y = helper.make_tensor_value_info("y", F, ["batch", 3])
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    nodes = [helper.make_node("Add", ["x", "w"], ["y"], name="add")] + list(extra_nodes)
    return helper.make_graph(nodes, name, [x], [y], [w] + list(inits), value_info=list(value_info))


def typed(name, dtype, dims, field, values):
    t = TensorProto()
    t.name = name
    t.data_type = dtype
    t.dims.extend(dims)
    getattr(t, field).extend(values)
    return t


def raw_offset(data, marker):
    i = data.find(marker)
    assert i >= 0 and data.find(marker, i + 1) < 0
    return i


# ---- typed fields and raw_data, with one aligned and one misaligned raw tensor --------
def typed_fields_model(pad):
    inits = [
        typed("t_float", F, [3], "float_data", [1.5, -2.0, 3.25]),
        typed("t_int32", TensorProto.INT32, [2], "int32_data", [-7, 2147483647]),
        typed("t_int8", TensorProto.INT8, [3], "int32_data", [-128, 0, 127]),
        typed("t_uint8", TensorProto.UINT8, [2], "int32_data", [0, 255]),
        typed("t_int16", TensorProto.INT16, [2], "int32_data", [-32768, 32767]),
        typed("t_uint16", TensorProto.UINT16, [2], "int32_data", [0, 65535]),
        typed("t_bool", TensorProto.BOOL, [3], "int32_data", [1, 0, 1]),
        typed("t_float16", TensorProto.FLOAT16, [2], "int32_data", [0x3C00, 0xC000]),  # 1, -2
        typed("t_bfloat16", TensorProto.BFLOAT16, [2], "int32_data", [0x3F80, 0x4040]),  # 1, 3
        typed("t_int64", TensorProto.INT64, [2], "int64_data", [-(2**40), 2**62]),
        typed("t_double", TensorProto.DOUBLE, [2], "double_data", [0.125, -1e300]),
        typed("t_uint32", TensorProto.UINT32, [2], "uint64_data", [0, 4294967295]),
        typed("t_uint64", TensorProto.UINT64, [1], "uint64_data", [2**64 - 1]),
        typed("t_scalar", F, [], "float_data", [42.0]),
        typed("t_empty", F, [0, 4], "float_data", []),
        numpy_helper.from_array(np.array([1, 2, 3, 4], dtype=np.int64), "r_int64"),
    ]
    aligned = numpy_helper.from_array(np.full(16, 0.5, dtype=np.float32), "r_aligned")
    misaligned = numpy_helper.from_array(np.full(16, 0.25, dtype=np.float32), "r_misaligned")
    # doc_string (field 12) follows raw_data (field 9): padding a tensor's doc_string
    # moves the tensors after it.
    inits[-1].doc_string = "p" * pad[0]
    aligned.doc_string = "q" * pad[1]
    g = add_graph("typed_fields", inits + [aligned, misaligned])
    return model(g)


for pad in ((i, j) for i in range(8) for j in range(8)):
    data = typed_fields_model(pad).SerializeToString()
    a = raw_offset(data, np.full(16, 0.5, dtype=np.float32).tobytes())
    b = raw_offset(data, np.full(16, 0.25, dtype=np.float32).tobytes())
    if a % 4 == 0 and b % 4 == 2:
        break
else:
    raise SystemExit("could not place the aligned/misaligned tensors")
save("typed_fields.onnx", data)

# ---- external data --------------------------------------------------------------------
ext_values = np.arange(8, dtype=np.float32)
bin_bytes = bytearray(64)
bin_bytes[0:32] = ext_values.tobytes()           # offset 0, aligned
bin_bytes[34:42] = np.array([7, 9], dtype=np.float32).tobytes()  # offset 34: misaligned
with open(os.path.join(OUT, "external.bin"), "wb") as f:
    f.write(bytes(bin_bytes))


def external_tensor(name, dims, location, offset=None, length=None, dtype=F):
    t = TensorProto()
    t.name = name
    t.data_type = dtype
    t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key = k
            e.value = str(v)
    return t


def external_model(name, tensors):
    save(name, model(add_graph(name.split(".")[0], tensors)))


external_model("external.onnx", [external_tensor("e_aligned", [8], "external.bin", 0, 32),
                                 external_tensor("e_misaligned", [2], "external.bin", 34, 8)])
external_model("external_dotdot.onnx", [external_tensor("e", [2], "../onnx/external.bin", 0, 8)])
external_model("external_absolute.onnx", [external_tensor("e", [2], "/etc/passwd", 0, 8)])
external_model("external_symlink.onnx", [external_tensor("e", [2], "link.bin", 0, 8)])
external_model("external_past_end.onnx", [external_tensor("e", [4], "external.bin", 56, 16)])
external_model("external_bad_length.onnx", [external_tensor("e", [4], "external.bin", 0, 12)])
external_model("external_missing.onnx", [external_tensor("e", [4], "no_such_file.bin", 0, 16)])

# ---- subgraphs: If (capturing outer values, with a subgraph initializer) and Loop -----
then_g = helper.make_graph(
    [helper.make_node("Add", ["x", "bias"], ["then_out"], name="then_add")], "then_body", [],
    [helper.make_tensor_value_info("then_out", F, [2, 3])],
    [numpy_helper.from_array(np.ones((2, 3), np.float32), "bias")])
else_g = helper.make_graph(
    [helper.make_node("Mul", ["x", "y"], ["else_out"], name="else_mul")], "else_body", [],
    [helper.make_tensor_value_info("else_out", F, [2, 3])])
loop_body = helper.make_graph(
    [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_cond"),
     helper.make_node("Add", ["acc_in", "w"], ["acc_out"], name="body_add")], "loop_body",
    [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
     helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
     helper.make_tensor_value_info("acc_in", F, None)],
    [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
     helper.make_tensor_value_info("acc_out", F, None)])
g = helper.make_graph(
    [helper.make_node("Add", ["x", "w"], ["y"], name="add"),
     helper.make_node("If", ["c"], ["z"], name="if", then_branch=then_g, else_branch=else_g),
     helper.make_node("Loop", ["trip", "", "z"], ["looped"], name="loop", body=loop_body)],
    "subgraphs",
    [helper.make_tensor_value_info("x", F, [2, 3]),
     helper.make_tensor_value_info("c", TensorProto.BOOL, []),
     helper.make_tensor_value_info("trip", TensorProto.INT64, [])],
    [helper.make_tensor_value_info("looped", F, [2, 3])],
    [numpy_helper.from_array(np.full((2, 3), 2.0, np.float32), "w")])
save("subgraphs.onnx", model(g))

# ---- every attribute kind, Constant node variants, value_info, initializer-as-input ---
sub = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "attr_graph",
                        [helper.make_tensor_value_info("a", F, [1])],
                        [helper.make_tensor_value_info("b", F, [1])])
sparse = helper.make_sparse_tensor(
    numpy_helper.from_array(np.array([5.0], np.float32), "sv"),
    numpy_helper.from_array(np.array([1], np.int64), "si"), [3])
attrs_node = helper.make_node(
    "Everything", ["x"], ["ev"], name="everything", domain="test.domain",
    a_float=0.5, a_int=-3, a_string=b"hello", a_tensor=numpy_helper.from_array(
        np.array([[1, 2], [3, 4]], np.int32), "at"),
    a_graph=sub, a_floats=[1.0, 2.5], a_ints=[1, -2, 3], a_strings=[b"p", b"qr"],
    a_tensors=[numpy_helper.from_array(np.array([1.0], np.float32), "t0"),
               numpy_helper.from_array(np.array([2, 3], np.int64), "t1")],
    a_graphs=[sub, sub], a_sparse=sparse)
tp_attr = helper.make_attribute("a_type", helper.make_tensor_type_proto(F, [2]))
attrs_node.attribute.append(tp_attr)
empty_ints = attrs_node.attribute.add()
empty_ints.name = "a_empty_ints"
empty_ints.type = onnx.AttributeProto.INTS
consts = [
    helper.make_node("Constant", [], ["c_value"], name="c_value",
                     value=numpy_helper.from_array(np.array([1.0, 2.0], np.float32))),
    helper.make_node("Constant", [], ["c_value_float"], name="c_value_float", value_float=3.5),
    helper.make_node("Constant", [], ["c_value_floats"], name="c_value_floats",
                     value_floats=[1.0, 2.0]),
    helper.make_node("Constant", [], ["c_value_int"], name="c_value_int", value_int=7),
    helper.make_node("Constant", [], ["c_value_ints"], name="c_value_ints", value_ints=[4, 5]),
    helper.make_node("Constant", [], ["c_value_string"], name="c_value_string",
                     value_string="s"),
    helper.make_node("Constant", [], ["c_sparse"], name="c_sparse", sparse_value=sparse),
]
optional_in = helper.make_node("Clip", ["x", "", "c_value_float"], ["clipped", ""], name="clip")
x = helper.make_tensor_value_info("x", F, ["batch", None, 4])
x.type.tensor_type.shape.dim[1].Clear()  # neither dim_value nor dim_param
w_in = helper.make_tensor_value_info("w", F, [2, 3])
g = helper.make_graph(
    [attrs_node, optional_in] + consts, "attributes", [x, w_in],
    [helper.make_tensor_value_info("ev", F, None),
     helper.make_tensor_value_info("clipped", F, ["batch", None, 4])],
    [numpy_helper.from_array(np.zeros((2, 3), np.float32), "w")],
    value_info=[helper.make_tensor_value_info("c_value", F, [2])])
save("attributes.onnx", model(g, [helper.make_opsetid("", 17),
                                  helper.make_opsetid("test.domain", 3)]))

# ---- broken models ----------------------------------------------------------------------
cyc = helper.make_graph([helper.make_node("Relu", ["b"], ["a"], name="r1"),
                         helper.make_node("Relu", ["a"], ["b"], name="r2")], "cycle",
                        [helper.make_tensor_value_info("x", F, [1])],
                        [helper.make_tensor_value_info("a", F, [1])])
save("cycle.onnx", model(cyc))

dup = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r1"),
                         helper.make_node("Neg", ["x"], ["y"], name="r2")], "dup",
                        [helper.make_tensor_value_info("x", F, [1])],
                        [helper.make_tensor_value_info("y", F, [1])])
save("duplicate_producer.onnx", model(dup))

undef = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["y"], name="r1")], "undef",
                          [helper.make_tensor_value_info("x", F, [1])],
                          [helper.make_tensor_value_info("y", F, [1])])
save("undefined_input.onnx", model(undef))

valid = save("valid_small.onnx", model(add_graph("valid_small")))
save("truncated.onnx", valid[: len(valid) * 2 // 3])

huge = TensorProto()
huge.name = "huge"
huge.data_type = F
huge.dims.extend([2**31, 2**31])  # 2^62 elements
save("huge_dims.onnx", model(add_graph("huge_dims", [huge])))

neg = typed("neg", F, [-1, 2], "float_data", [1.0, 2.0])
save("negative_dim.onnx", model(add_graph("negative_dim", [neg])))

bad_raw = TensorProto()
bad_raw.name = "fc.weight"
bad_raw.data_type = F
bad_raw.dims.extend([32, 32])
bad_raw.raw_data = bytes(10)
save("raw_size_mismatch.onnx", model(add_graph("raw_size_mismatch", [bad_raw])))

bad_count = typed("short", F, [2, 2], "float_data", [1.0, 2.0, 3.0])
save("typed_count_mismatch.onnx", model(add_graph("typed_count_mismatch", [bad_count])))

unk = TensorProto()
unk.name = "strange"
unk.data_type = 99
unk.dims.extend([1])
unk.raw_data = bytes(4)
save("unknown_dtype.onnx", model(add_graph("unknown_dtype", [unk])))

s = helper.make_tensor("words", TensorProto.STRING, [2], [b"a", b"b"])
save("string_initializer.onnx", model(add_graph("string_initializer", [s])))

seq_in = helper.make_graph(
    [helper.make_node("SequenceLength", ["s"], ["n"], name="len")], "sequence_input",
    [helper.make_tensor_sequence_value_info("s", F, None)],
    [helper.make_tensor_value_info("n", TensorProto.INT64, [])])
save("sequence_input.onnx", model(seq_in))

rank9 = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "rank9",
                          [helper.make_tensor_value_info("x", F, [1] * 9)],
                          [helper.make_tensor_value_info("y", F, None)])
save("rank9_input.onnx", model(rank9))

wrong_attr = helper.make_node("Relu", ["x"], ["y"], name="bad_attr")
a = wrong_attr.attribute.add()
a.name = "then_branch"
a.type = onnx.AttributeProto.GRAPH  # kind GRAPH, but no graph
save("attribute_no_graph.onnx", model(helper.make_graph(
    [wrong_attr], "attribute_no_graph", [helper.make_tensor_value_info("x", F, [1])],
    [helper.make_tensor_value_info("y", F, [1])])))


def nested_if(depth):
    inner = helper.make_graph([helper.make_node("Identity", ["x"], ["o0"])], "g0", [],
                              [helper.make_tensor_value_info("o0", F, [1])])
    for d in range(1, depth + 1):
        inner = helper.make_graph(
            [helper.make_node("If", ["c"], ["o%d" % d], then_branch=inner, else_branch=inner)],
            "g%d" % d, [], [helper.make_tensor_value_info("o%d" % d, F, [1])])
    return helper.make_graph(inner.node, "nested", [helper.make_tensor_value_info("x", F, [1]),
                             helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                             list(inner.output))


# Each level holds its child twice, so keep the deep one's body single to stay small.
def nested_chain(depth):
    inner = helper.make_graph([helper.make_node("Identity", ["x"], ["o0"])], "g0", [],
                              [helper.make_tensor_value_info("o0", F, [1])])
    for d in range(1, depth + 1):
        inner = helper.make_graph(
            [helper.make_node("Loop", ["", "c"], [], body=inner)],
            "g%d" % d, [], [])
    return helper.make_graph(inner.node, "nested", [helper.make_tensor_value_info("x", F, [1]),
                             helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                             [helper.make_tensor_value_info("x", F, [1])])


save("nested_ok.onnx", model(nested_if(3)))
save("nested_too_deep.onnx", model(nested_chain(70)))


# ---- hand-made wire-format damage -----------------------------------------------------
def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_len(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload


opset = field_len(8, field_len(1, b"") + varint(2 << 3) + varint(17))
save("wire_graph_as_varint.onnx", varint(1 << 3) + varint(8) + opset + varint(7 << 3) + varint(5))
save("wire_overlong_varint.onnx", varint(1 << 3) + b"\xff" * 10 + b"\x01" + opset)
save("wire_length_past_end.onnx", varint(1 << 3) + varint(8) + opset +
     varint(7 << 3 | 2) + varint(1000) + b"abc")
save("wire_group.onnx", varint(1 << 3) + varint(8) + opset + varint(7 << 3 | 3))
# A node whose input field (string) carries a varint: protobuf-c must refuse it.
node_bad = varint(1 << 3) + varint(5) + field_len(4, b"Relu")
graph_bad = field_len(1, node_bad) + field_len(2, b"g")
save("wire_node_bad_field.onnx", varint(1 << 3) + varint(8) + opset + field_len(7, graph_bad))
# The initializer's raw_data given as a fixed32.
tensor_bad = varint(2 << 3) + varint(1) + field_len(8, b"t") + varint(9 << 3 | 5) + bytes(4)
save("wire_raw_data_fixed32.onnx", varint(1 << 3) + varint(8) + opset +
     field_len(7, field_len(5, tensor_bad)))

# ---- a TensorProto file with typed fields (test data style) ---------------------------
save("tensor_typed.pb", typed("typed_input", TensorProto.INT64, [2, 2], "int64_data",
                              [1, -2, 3, -4]).SerializeToString())
print("wrote models to", os.path.abspath(OUT))
