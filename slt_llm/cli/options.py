"""The parser every ``slt-llm`` command builds: one spelling per meaning across commands
(``--out`` for what a command writes, ``--model`` for a trained model folder, ``--llm`` for
an LLM folder or hub id, ``--pose-dir``, ``--config``), and the old spellings kept one
release as hidden aliases that warn on stderr (``Parser.option(..., old=[...])``).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["Parser", "missing_help"]


class _DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: hidden from --help; stores into the new flag's ``dest`` and
    prints one line on stderr naming the new flag."""

    def __init__(self, option_strings, dest, new: str, **kw):
        kw["default"] = argparse.SUPPRESS  # the new flag's action owns the default
        kw["help"] = argparse.SUPPRESS
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is deprecated and goes in the next release; "
              f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :meth:`option` (an argument with its old spellings)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._aliased: list[tuple[argparse.Action, tuple[str, ...]]] = []

    def option(self, *names: str, old: tuple[str, ...] | list[str] = (), **kw) -> argparse.Action:
        """``add_argument(*names, **kw)``, and each spelling in ``old`` as a hidden alias of it
        (a flag taking one value). A required flag is satisfied by an alias too."""
        action = self.add_argument(*names, **kw)
        for spelling in old:
            self.add_argument(spelling, dest=action.dest, action=_DeprecatedAlias, new=names[0],
                              type=kw.get("type"), choices=kw.get("choices"), metavar=action.metavar)
        if old:
            self._aliased.append((action, tuple(old)))
        return action

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
        # a required flag given in an old spelling: argparse must not ask for the new one
        relaxed = [a for a, olds in self._aliased if a.required and given & set(olds)]
        for a in relaxed:
            a.required = False
        try:
            return super().parse_known_args(args, namespace)
        finally:
            for a in relaxed:
                a.required = True


def missing_help(parser: argparse.ArgumentParser) -> list[str]:
    """The arguments of ``parser`` shown in --help without a help text (empty: all have one)."""
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
            continue
        if not (a.help or "").strip():
            out.append("/".join(a.option_strings) or a.dest)
    return out
