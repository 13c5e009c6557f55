"""A module with a ``forward`` of its own, read through its traced graph (``torch.fx``).

``torch.fx.symbolic_trace`` records the operations ``forward`` performs on its input; the graph
is mapped onto gcref's layers:

- a **call of a module** that gcref reads by itself (a leaf of the conversion table,
  ``nn.Sequential``, a torchvision-structured block, ...) gives that module's layers, named by
  its path; a module of your own is traced through (its operations join the graph);
- a **functional call** (``F.relu(x)``, ``F.max_pool2d(x, 2)``, ``x.sigmoid()``, ...) is read as
  the module of the same arguments (``nn.ReLU()``, ``nn.MaxPool2d(2)``), named by its graph node
  (``relu_1``); ``torch.flatten(x, 1)`` and ``x.view(x.size(0), -1)`` / ``reshape`` to
  ``(batch, -1)`` (or ``(-1, n)``, ``n`` the flattened size) are a :class:`~gcref.nn.Flatten`;
- **two branches** from one tensor joined by ``+`` (``out += identity``, ``torch.add``) are a
  :class:`~gcref.nn.Residual` (``main(x) + shortcut(x)``, the shortcut the identity when one
  branch is empty), its parameters under the modules' common parent path (``layer1.0``), so the
  keys stay the ``state_dict`` keys. A residual whose modules share no parent (written at the top
  level of a ``forward``) is named by its graph node (``add``), which its parameter keys then
  carry (``add.conv1.weight``; ``from_torch`` reads them from ``conv1.weight``);
- a **softmax / log-softmax** is accepted after the head only (``from_torch``).

Anything else is refused with :class:`UnsupportedModuleError` naming the graph node and the
source line that made it: concatenation and other operations with several inputs, a tensor used
by more than two operations, data-dependent control flow (``if x.sum() > 0``: tracing itself
fails, and the line is named), a module with parameters called twice (shared weights).
"""

from __future__ import annotations

import builtins
import operator
import os
import re
import traceback

import torch
from torch import fx

from ...nn import layers as L
from ...nn.containers import Sequential
from ._common import UnsupportedModuleError, join
from .leaves import (FROM_TORCH, FUNCTION_NAMES, FUNCTIONS, METHODS, SizeCheck, affine_of,
                     global_mean_of, is_add)

__all__ = ["trace_chain"]

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_GCREF_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in [^\n]*\n[ \t]*([^\n]*)')


def _user_frame(frames) -> str:
    """``file:line: code`` of the last frame outside torch and gcref (the user's line)."""
    for file, line, code in reversed(frames):
        if not file.startswith((_TORCH_DIR, _GCREF_DIR)):
            return f"{os.path.basename(file)}:{line}: {code.strip()}"
    return "source line unknown"


class _Tracer(fx.Tracer):
    def __init__(self, is_leaf):
        super().__init__()
        self.record_stack_traces = True
        self._is_leaf = is_leaf

    def is_leaf_module(self, m, module_qualified_name):
        return self._is_leaf(m)


def trace_chain(module, path, flatten_module, is_leaf) -> list[tuple[str, object]]:
    """``module``'s traced ``forward`` as a chain of ``(path, gcref layer)``.

    ``flatten_module(m, path)`` converts a module the trace keeps as a leaf (those for which
    ``is_leaf(m)``): passed in by :mod:`.structure`, which calls this for modules it cannot read
    by their structure.
    """
    modes = {m: m.training for m in module.modules()}
    module.eval()                # the evaluation function (F.dropout(training=self.training))
    try:
        graph = _Tracer(is_leaf).trace(module)
    except Exception as err:     # noqa: BLE001 - any tracing failure is reported as unsupported
        frames = [(f.filename, f.lineno, f.line or "") for f in traceback.extract_tb(err.__traceback__)]
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsupportedModuleError(
            f"{path or 'module'}: {type(module).__name__}'s forward cannot be traced at "
            f"{_user_frame(frames)} ({msg}); gcref reads a forward whose operations do not depend "
            f"on the data (no `if` on tensor values)") from None
    finally:
        for m, training in modes.items():
            m.training = training
    return _Reader(module, graph, path, flatten_module).read()


def _describe_target(node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    if node.op == "call_module":
        return f"module '{node.target}'"
    if node.op == "get_attr":
        return f"the attribute '{node.target}'"
    target = node.target
    mod = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    return f"{mod}.{name}" if mod else name


class _Reader:
    def __init__(self, root, graph, path, flatten_module):
        self.root, self.graph, self.path, self.flatten = root, graph, path, flatten_module
        # every component of a module path: names the gcref chain may use without a clash
        self.components = {c for name, _ in root.named_modules() if name
                           for c in join(path, name).split(".")}
        self.used: set[str] = set()
        self.called: dict[str, int] = {}

    # ----------------------------------------------------------------- messages
    def where(self, node) -> str:
        frames = [(f, int(n), c) for f, n, c in _FRAME.findall(node.meta.get("stack_trace") or "")]
        return f"graph node '{join(self.path, node.name)}' ({_user_frame(frames)})"

    def refuse(self, node, detail) -> UnsupportedModuleError:
        return UnsupportedModuleError(f"{self.where(node)}: {detail}")

    def unsupported_op(self, node, detail=None):
        what = detail or f"{_describe_target(node)} is not supported"
        return self.refuse(node, f"{what}. A traced forward may call the modules gcref supports "
                                 f"and {FUNCTION_NAMES}")

    # ----------------------------------------------------------------- names
    def fresh(self, base: str) -> str:
        """``base``, or ``base_2``, ``base_3``, ... : a chain name not used before (a
        parameter-free module called again)."""
        name, i = base, 2
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name

    def virtual(self, node, under=None) -> str:
        """A chain name for a layer that is no module: the node's name (``relu_1``, ``add``)
        under ``under`` (default: the traced module's path), made unique and off every module
        path component (so that ``from_torch`` can tell it from a module in a parameter key)."""
        under = self.path if under is None else under
        base, i = node.name, 2
        name = base
        while name in self.components or join(under, name) in self.used:
            name, i = f"{base}_{i}", i + 1
        full = join(under, name)
        self.used.add(full)
        return full

    # ----------------------------------------------------------------- graph walk
    @staticmethod
    def _is_shape_query(node) -> bool:
        return (node.op == "call_method" and node.target in ("size", "dim")) or \
            (node.op == "call_function" and node.target is builtins.getattr
             and len(node.args) == 2 and node.args[1] == "shape")

    def users(self, node):
        return [u for u in node.users if not self._is_shape_query(u)]

    def read(self):
        inputs = [n for n in self.graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise self.refuse(inputs[-1] if inputs else next(iter(self.graph.nodes)),
                              f"forward takes {len(inputs)} inputs; gcref reads a forward of one "
                              f"input tensor")
        items, _, join_node = self.chain(inputs[0])
        if join_node is not None:
            raise self.unsupported_op(join_node, f"{_describe_target(join_node)} here does not "
                                                 f"join two branches from one tensor (a residual "
                                                 f"connection)")
        return [(name, layer) for name, layer, _ in items]

    def chain(self, cur):
        """Items from ``cur`` on, until the output or an addition: ``(items, last node, add)``."""
        items = []
        while True:
            users = self.users(cur)
            in_place = [u for u in users if self._in_place(u) and u.args and u.args[0] is cur]
            if in_place and len(users) > 1:
                # torch overwrites cur, which another operation also reads: the traced graph (which
                # records no mutation) would compute something else
                others = [u.name for u in users if u is not in_place[0]]
                raise self.unsupported_op(in_place[0], f"{_describe_target(in_place[0])} in place "
                                                       f"on '{cur.name}', which {', '.join(others)} "
                                                       f"also use{'s' if len(others) == 1 else ''}, "
                                                       f"is not supported (the graph does not "
                                                       f"record the overwrite)")
            outputs = [u for u in users if u.op == "output"]
            if outputs:
                if len(users) > 1 or outputs[0].args[0] is not cur:
                    raise self.refuse(outputs[0], "forward must return one tensor, computed by a "
                                                  "chain of operations (not a tuple, list or dict, "
                                                  "nor a tensor also used elsewhere)")
                return _merge_affine(items), cur, None
            if not users:
                raise self.refuse(cur, "its result is not used")
            if len(users) == 1:
                if is_add(users[0]):
                    return _merge_affine(items), cur, users[0]
                items.extend(self.convert(users[0], cur))
                cur = users[0]
                continue
            if len(users) == 2:
                item, cur = self.residual(cur, users)
                items.append(item)
                continue
            raise self.refuse(users[2], f"the output of '{cur.name}' is used by {len(users)} "
                                        f"operations ({', '.join(u.name for u in users)}); gcref "
                                        f"reads chains and residual connections (two branches "
                                        f"joined by +)")

    def residual(self, cur, users):
        arms = []
        for u in users:
            if is_add(u):
                arms.append(([], cur, u))
                continue
            first = self.convert(u, cur)
            items, end, add = self.chain(u)
            if add is None:
                raise self.refuse(u, f"a branch from '{cur.name}' reaches the output without "
                                     f"being added back (gcref reads residual connections "
                                     f"x -> f(x) + g(x))")
            arms.append((first + items, end, add))
        (items_a, end_a, add), (items_b, end_b, add_b) = arms
        if add_b is not add or sorted(map(id, add.args)) != sorted(map(id, (end_a, end_b))):
            other = add_b if add_b is not add else add
            raise self.unsupported_op(other, f"the two branches from '{cur.name}' do not end in "
                                             f"one addition of the two (a residual connection)")
        if add.args[0] is end_b:                        # main: the first summand ...
            items_a, items_b = items_b, items_a
        if not items_a:                                 # ... unless it is the identity
            items_a, items_b = items_b, items_a
        if not items_a:
            raise self.unsupported_op(add, "x + x is not supported")
        return self._residual_item(add, items_a, items_b), add

    def _residual_item(self, add, main, short):
        mods = [m for _, _, ms in main + short for m in ms]
        parents = [m.split(".")[:-1] for m in mods]
        prefix = []
        if parents:
            for parts in zip(*parents):
                if len(set(parts)) != 1:
                    break
                prefix.append(parts[0])
        base = ".".join(prefix)
        if base and base not in self.used:
            name = base                       # the modules' parent: keys are the state_dict's
            self.used.add(name)
        else:
            name = self.virtual(add, base)    # named by the node (under the parent, if any)
        cut = len(base) + 1 if base else 0

        def chain_of(items):
            rel = [(n[cut:] if cut and n.startswith(base + ".") else n, layer)
                   for n, layer, _ in items]
            for n, layer in rel:
                if isinstance(layer, SizeCheck):
                    raise UnsupportedModuleError(f"{layer.where}: a view/reshape to a fixed size "
                                                 f"inside a residual branch is not supported (use "
                                                 f"(batch, -1))")
                if not isinstance(layer, L.Layer):
                    raise self.unsupported_op(add, f"a {layer.describe()} ('{n}') inside a "
                                                   f"residual branch is not supported")
            return Sequential(rel) if rel else None

        return name, L.Residual(chain_of(main), chain_of(short)), tuple(mods)

    # ----------------------------------------------------------------- one operation
    def _only_input(self, node, cur, args):
        """Refuse unless ``cur`` is the operation's only tensor input."""
        tensors = _nodes_in((args, node.kwargs))
        if any(t is not cur for t in tensors):
            raise self.unsupported_op(node, f"{_describe_target(node)} with several tensor "
                                            f"inputs ({', '.join(t.name for t in [cur] + tensors)}) "
                                            f"is not supported")

    def _in_place(self, node) -> bool:
        if node.op == "call_module":
            return bool(getattr(self.root.get_submodule(node.target), "inplace", False))
        if node.op == "call_method":
            return node.target.endswith("_") and not node.target.startswith("_")
        name = getattr(node.target, "__name__", "")
        return bool(node.kwargs.get("inplace", False)) or (name.endswith("_") and name != "_") \
            or node.target in _IN_PLACE_OPERATORS

    def convert(self, node, cur):
        """The items of one operation whose input is ``cur``: ``[(name, layer, module paths)]``."""
        try:
            affine, keepdim = affine_of(node, cur), global_mean_of(node, cur)
        except ValueError as err:
            raise self.unsupported_op(node, f"{_describe_target(node)} with {err}") from None
        if affine is not None:
            return [(self.virtual(node), L.Affine(*affine), ())]
        if keepdim is not None:                  # global average pooling
            name = self.virtual(node)
            pool = [(name, L.AdaptiveAvgPool2d(1), ())]
            return pool if keepdim else pool + [(name + ".flatten", L.Flatten(), ())]
        if node.op == "call_module":
            if node.args != (cur,) or node.kwargs:
                raise self.unsupported_op(node, f"module '{node.target}' called with arguments "
                                                f"other than its one input")
            module = self.root.get_submodule(node.target)
            full = join(self.path, node.target)
            items = self.flatten(module, full)
            self.called[full] = self.called.get(full, 0) + 1
            if self.called[full] > 1 and any(layer.keys() for _, layer in items
                                             if isinstance(layer, L.Layer)):
                raise self.refuse(node, f"module '{full}' is called twice; shared weights are "
                                        f"not supported")
            return [(self.fresh(name), layer, (name,)) for name, layer in items]
        if node.op == "call_function" and node.target in FUNCTIONS:
            make, args = FUNCTIONS[node.target], node.args
        elif node.op == "call_method" and node.target in METHODS:
            make, args = METHODS[node.target], node.args
        elif node.op == "call_method" and node.target in ("view", "reshape"):
            return self.flatten_view(node, cur)
        elif node.op == "call_method" and node.target == "contiguous":
            self._only_input(node, cur, node.args[1:])
            return []
        else:
            raise self.unsupported_op(node)
        if not args or args[0] is not cur:
            raise self.unsupported_op(node, f"{_describe_target(node)} not applied to the "
                                            f"previous result")
        self._only_input(node, cur, args[1:])
        label = self.where(node)
        try:
            module = make(*args[1:], **node.kwargs)
        except (TypeError, ValueError) as err:
            raise self.unsupported_op(node, f"{_describe_target(node)} with {err}") from None
        layer = FROM_TORCH[type(module)](label, module)
        return [(self.virtual(node), layer, ())]

    def flatten_view(self, node, cur):
        """``x.view(x.size(0), -1)`` and the like: a Flatten (or refused, naming the node)."""
        sizes = list(node.args[1:])
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = list(sizes[0])
        values = [self._size_value(s) for s in sizes]
        name = self.virtual(node)
        if len(values) == 2 and values[0] == "batch" and values[1] == -1:
            return [(name, L.Flatten(), ())]
        if len(values) == 2 and values[0] in ("batch", -1) and isinstance(values[1], int) \
                and values[1] > 0:
            return [(name, L.Flatten(), ()),
                    (name + ".size", SizeCheck(values[1], self.where(node)), ())]
        raise self.unsupported_op(node, f"Tensor.{node.target} to {tuple(sizes)} is not "
                                        f"supported (only to (batch, -1): x.view(x.size(0), -1))")

    def _size_value(self, s):
        """An int, ``"batch"`` for ``x.size(0)`` / ``x.shape[0]``, or ``None`` (unknown)."""
        if isinstance(s, int):
            return s
        if not isinstance(s, fx.Node):
            return None
        if s.op == "call_method" and s.target == "size" and s.args[1:] == (0,):
            return "batch"
        if s.op == "call_function" and s.target is operator.getitem and s.args[1] == 0:
            src = s.args[0]
            if isinstance(src, fx.Node) and (self._is_shape_query(src) and
                                             (src.op == "call_function" or src.args[1:] == ())):
                return "batch"
        return None


#: ``x += ...``, ``x *= ...``: overwrite their first operand
_IN_PLACE_OPERATORS = (operator.iadd, operator.isub, operator.imul, operator.itruediv)


def _merge_affine(items):
    """Consecutive :class:`~gcref.nn.Affine` items as one (``x / 255 * 2 - 1`` is one layer),
    named by the first: ``a2 (a1 x + b1) + b2 = (a2 a1) x + (a2 b1 + b2)``."""
    out = []
    for item in items:
        name, layer, mods = item
        if out and type(layer) is L.Affine and type(out[-1][1]) is L.Affine:
            first = out[-1][1]
            item = (out[-1][0], L.Affine(layer.scale * first.scale,
                                         layer.scale * first.shift + layer.shift), ())
            out[-1] = item
            continue
        out.append(item)
    return out


def _nodes_in(value) -> list:
    """The ``fx.Node`` objects in a nest of args / kwargs."""
    out = []
    fx.node.map_arg(value, out.append)
    return out
