"""Channel concats written in place: the token mixer's chunk convs read their chunk straight from the block's
input and write their result straight into the concatenated output, so neither the split nor the concat copies
anything but the identity chunk.

A block's token mixer legalizes to split(x) -> (identity | 3x3 | 7x7 | 1x11 -> 11x1) -> concat, and a
downsample's to concat(3x3(x), 7x7(x)): every channel of the block passes through two extra copies (M0 on
Zen 4: 0.25 ms of 8.2 in splits and concats). Here each conv kernel that feeds a concat gets a variant whose
output parameter is a channel window of the concatenated tensor (a strided view of it: same body, same
schedule), chained by `call_tir_inplace`; each kernel reading a split chunk gets a variant whose input is that
channel window of the split's input. The identity chunk is one strided copy into its window.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from repnext_core.compile.tvm.concat_schedule import CONCAT_ATTR, SPLIT_ATTR, copy_lanes, match_concat
from repnext_core.compile.tvm.conv_schedule import vector_unit


@dataclass(frozen=True)
class Window:
    """Channels [offset, offset + width) of a channels-last tensor of `channels` channels."""

    offset: int
    width: int
    channels: int


def window_view(func, param: int, window: Window):
    """`func` with its parameter `param` (a channels-last buffer of window.width channels) taking the whole
    tensor of window.channels channels instead, the body reading or writing its window through a strided view.

    A round trip through TVMScript, as in conv_schedule.vectorize_marked: the parameter is renamed, and a
    buffer declared under its old name aliases the new one's data with the tensor's strides and the window's
    offset, so that the body and its schedule stay as they are."""
    import tvm
    from tvm.script import from_source

    buffer = func.params[param]
    shape = [int(d) for d in buffer.shape]
    if shape[-1] != window.width:
        raise ValueError(f"parameter {param} has {shape[-1]} channels, the window {window.width}")
    name, dtype = buffer.name, str(buffer.dtype)
    index = str(buffer.shape[0].ty)
    text = tvm.IRModule({"main": func}).script()
    declared = re.compile(
        rf"(?<=[(\s]){re.escape(name)}: T\.Buffer\(\([^()]*(?:\([^()]*\)[^()]*)*\), \"{dtype}\"\)"
    )
    full = [*shape[:-1], window.channels]
    text, found = declared.subn(f'{name}_whole: T.Buffer({_shape(full, index)}, "{dtype}")', text, count=1)
    strides = [math.prod(full[k + 1 :]) for k in range(len(full))]
    view = (
        f'{name} = T.decl_buffer({_shape(shape, index)}, "{dtype}", data={name}_whole.data, '
        f"strides=({', '.join(map(str, strides))}), elem_offset={window.offset})"
    )
    text, attrs = re.subn(
        r"(\n( +)T\.func_attr\([^\n]*\n)", lambda m: f"{m.group(1)}{m.group(2)}{view}\n", text, count=1
    )
    if not found or not attrs:
        raise RuntimeError(
            f"window_view: parameter {name!r} or the function attributes not found in the script"
        )
    return from_source(text)["main"]


def _shape(dims: list[int], index: str) -> str:
    return "(" + ", ".join(f"T.{index}({d})" for d in dims) + ")"


def window_copy(shape: tuple[int, ...], dtype: str, source: Window, dest: Window, lanes: int):
    """A kernel copying `source`'s channels of its input into `dest`'s channels of its output (in place):
    pixel rows in parallel, channels in vectors of `lanes` where they divide."""
    from tvm import te
    from tvm.s_tir import Schedule

    part = te.placeholder((*shape[:-1], source.width), dtype, name="chunk")
    copy = te.compute(part.shape, lambda *i: part(*i), name="chunk_copy")
    sch = Schedule(te.create_prim_func([part, copy]))
    block = sch.get_sblock("chunk_copy")
    *pixels, channels = sch.get_loops(block)
    sch.parallel(sch.fuse(*pixels[:2]))
    lanes = copy_lanes(source.width, lanes)
    if lanes > 1:
        sch.vectorize(sch.split(channels, [None, lanes])[1])
    func = sch.mod["main"].with_attr("tirx.is_scheduled", True)
    return window_view(window_view(func, 0, source), 1, dest)


def concat_fed_kernels(mod) -> set[str]:
    """Kernels of a prepared (unscheduled) module whose output some call passes to a channel concat: the ones
    whose output write_concats_in_place may turn into a window of the concat. Their schedule must keep
    the epilogue in channel vectors: a run of pixels is not contiguous in a window (flat epilogues there
    scattered their stores: M0's 14x14 3x3 chunk conv 1.9 -> 6.0 us)."""
    from tvm import relax, tirx

    concats = {
        gv.name_hint
        for gv, func in mod.functions.items()
        if isinstance(func, tirx.PrimFunc) and match_concat(func) is not None
    }
    producers, fed = {}, set()
    for func in mod.functions.values():
        if not isinstance(func, relax.Function):
            continue
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if _is_call_tir(value):
                    producers[binding.var] = value.args[0].name_hint
                    if value.args[0].name_hint in concats:
                        fed |= {producers[a] for a in value.args[1].fields if a in producers}
                elif isinstance(value, relax.Var) and value in producers:
                    producers[binding.var] = producers[value]
    return fed


def write_concats_in_place(mod, target) -> tuple[object, int]:
    """`mod` with every channel concat marked by concat_schedule assembled in place where its parts allow
    (each part a split chunk or the only use of a kernel's output), and every kernel that reads a split chunk
    reading it from the split's input; splits and concats left without uses are removed. Returns (module,
    concat calls assembled in place)."""
    from tvm import relax

    mod = relax.transform.CanonicalizeBindings()(mod)  # no aliases: each tensor has one name
    main = mod["main"]
    rewriter = _Rewriter(mod, target)
    blocks = [rewriter.block(b) for b in main.body.blocks]
    if not rewriter.changed:
        return mod, 0
    mod = rewriter.builder.get()
    mod["main"] = relax.Function(
        main.params, relax.SeqExpr(blocks, main.body.body), main.ret_ty, main.is_pure, main.attrs
    )
    return relax.transform.DeadCodeElimination()(mod), rewriter.assembled


class _Rewriter:
    """Rewrites one dataflow block at a time (see write_concats_in_place)."""

    def __init__(self, mod, target):
        from tvm import relax

        self.mod, self.target, self.changed, self.assembled = mod, target, False, 0
        self.builder = relax.BlockBuilder(mod)  # gives the variants unique names and typed GlobalVars
        self.variants: dict[tuple, object] = {}

    def block(self, block):
        from tvm import relax

        if not isinstance(block, relax.DataflowBlock):
            return block
        self.values = {b.var: b.value for b in block.bindings}
        uses = _use_counts(block)
        plans, writers = {}, {}  # concat var -> its plan; producer var -> (concat var, part)
        for binding in block.bindings:
            plan = self._plan(binding, uses)
            if plan is not None:
                plans[binding.var] = plan
                self.assembled += 1
                writers.update({p: (binding.var, k) for k, p in enumerate(plan.producers) if p is not None})
        current = {}  # concat var -> its in-place tensor so far
        bindings = []
        for binding in block.bindings:
            var, value = binding.var, binding.value
            if var in writers:
                concat, part = writers[var]
                plan = plans[concat]
                out = Window(part * plan.width, plan.width, plan.channels)
                new = relax.DataflowVar(f"{var.name}_in_place", plan.info)
                bindings.append(relax.VarBinding(new, self._call(value, plan.info, out, current.get(concat))))
                current[concat] = new
            elif var in plans:
                plan, tensor = plans[var], current[var]
                for part, source in enumerate(plan.sources):
                    if source is not None:
                        x, window = source
                        gv = self._copy_kernel(
                            plan, window, Window(part * plan.width, plan.width, plan.channels)
                        )
                        new = relax.DataflowVar(f"{var.name}_part{part}", plan.info)
                        bindings.append(
                            relax.VarBinding(new, relax.call_tir_inplace(gv, [x, tensor], [1], plan.info))
                        )
                        tensor = new
                bindings.append(relax.VarBinding(var, tensor))
            elif self._reads_chunks(value):
                bindings.append(relax.VarBinding(var, self._call(value, var.ty)))
            else:
                bindings.append(binding)
                continue
            self.changed = True
        return relax.DataflowBlock(bindings)

    def _plan(self, binding, uses):
        from tvm import relax

        call = binding.value
        parts = _is_call_tir(call) and _attr(self.mod[call.args[0]], CONCAT_ATTR)
        if not parts:
            return None
        info = binding.var.ty
        channels = int(info.shape[-1])
        producers, sources = [], []
        for arg in call.args[1].fields:
            chunk = self._split_chunk(arg)
            value = self.values.get(arg)
            if chunk is not None:
                producers.append(None)
                sources.append(chunk)
            elif (
                isinstance(arg, relax.DataflowVar)
                and uses.get(arg, 0) == 1
                and _is_call_tir(value)
                and not _attr(self.mod[value.args[0]], SPLIT_ATTR)
            ):
                producers.append(arg)
                sources.append(None)
            else:
                return None
        if all(p is None for p in producers):
            return None
        return _Plan(info, channels, channels // int(parts), producers, sources)

    def _split_chunk(self, var):
        """(the split's input, the chunk's Window) when `var` is a chunk of a channel split, else None."""
        from tvm import relax

        item = self.values.get(var)
        if not isinstance(item, relax.TupleGetItem):
            return None
        split = self.values.get(item.tuple_value)
        parts = _is_call_tir(split) and _attr(self.mod[split.args[0]], SPLIT_ATTR)
        if not parts:
            return None
        source = split.args[1].fields[0]
        channels = int(source.ty.shape[-1])
        width = channels // int(parts)
        return source, Window(item.index * width, width, channels)

    def _reads_chunks(self, value) -> bool:
        return (
            _is_call_tir(value)
            and not _attr(self.mod[value.args[0]], CONCAT_ATTR)
            and any(self._split_chunk(a) is not None for a in value.args[1].fields)
        )

    def _call(self, call, info, out: Window | None = None, tensor=None):
        """`call` as its kernel's variant that reads split chunks from the split's input and, with `out`,
        writes that window of the concat: in place into `tensor`, or into a new tensor when it is None."""
        from tvm import relax

        args, inputs = list(call.args[1].fields), []
        for k, arg in enumerate(args):
            chunk = self._split_chunk(arg)
            if chunk is not None:
                args[k] = chunk[0]
                inputs.append((k, chunk[1]))
        variant = self._variant(call.args[0], tuple(inputs), len(args), out)
        if tensor is None:
            return relax.call_tir(variant, args, info)
        return relax.call_tir_inplace(variant, [*args, tensor], [len(args)], info)

    def _variant(self, gv, inputs: tuple, out_param: int, out: Window | None):
        key = (gv.name_hint, inputs, out)
        if key not in self.variants:
            func, name = self.mod[gv], gv.name_hint
            for param, window in inputs:
                func = window_view(func, param, window)
                name += f"_from{window.offset}of{window.channels}"
            if out is not None:
                func = window_view(func, out_param, out)
                name += f"_into{out.offset}of{out.channels}"
            self.variants[key] = self._add(name, func)
        return self.variants[key]

    def _copy_kernel(self, plan, source: Window, dest: Window):
        key = ("copy", tuple(int(d) for d in plan.info.shape), str(plan.info.dtype), source, dest)
        if key not in self.variants:
            lanes = vector_unit(self.target, key[2] if key[2] in ("float32", "float16") else "float32").lanes
            func = window_copy(key[1], key[2], source, dest, lanes)
            name = f"copy_{source.offset}of{source.channels}_into{dest.offset}of{dest.channels}"
            self.variants[key] = self._add(name, func)
        return self.variants[key]

    def _add(self, name: str, func):
        return self.builder.add_func(func.without_attr("global_symbol"), name)


@dataclass
class _Plan:
    info: object  # the concat's tensor type
    channels: int
    width: int  # channels per part
    producers: list  # per part: the var of the kernel call writing it in place, or None
    sources: list  # per part: (split input, Window) for a chunk copied as is, or None


def _is_call_tir(value) -> bool:
    """A plain call_tir: its arguments one tuple, no symbolic shape arguments."""
    from tvm import relax

    return (
        isinstance(value, relax.Call)
        and getattr(value.op, "name", "") == "relax.call_tir"
        and len(value.args) == 2
        and isinstance(value.args[1], relax.Tuple)
    )


def _attr(func, name: str) -> int:
    """The kernel's part count under `name` (0: not such a kernel)."""
    return int(func.attrs[name]) if func.attrs is not None and name in func.attrs else 0


def _use_counts(block) -> dict:
    """How often each var is used by the bindings of `block` (a DataflowVar is used nowhere else)."""
    from tvm import relax

    counts: dict = {}

    def visit(expr):
        if isinstance(expr, relax.Var):
            counts[expr] = counts.get(expr, 0) + 1
        elif isinstance(expr, relax.Call):
            for arg in expr.args:
                visit(arg)
        elif isinstance(expr, relax.Tuple):
            for field in expr.fields:
                visit(field)
        elif isinstance(expr, relax.TupleGetItem):
            visit(expr.tuple_value)

    for binding in block.bindings:
        visit(binding.value)
    return counts
