"""The package's shape: no module imports one that imports it back (directly or around a loop)."""
import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mier_tf")


def _module_name(path):
  rel = os.path.relpath(path, os.path.dirname(PACKAGE))[:-3].replace(os.sep, ".")
  return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def import_graph():
  """module -> the mier_tf modules it imports (anywhere in it, functions included)."""
  modules = {}
  for base, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(base, name)
        modules[_module_name(path)] = path
  graph = {}
  for module, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    targets = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom):
        base_name = node.module or ""
        if node.level:
          base_name = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                               + ([node.module] if node.module else []))
        for alias in node.names:  # `from pkg import module` imports the module
          full = f"{base_name}.{alias.name}"
          targets.add(full if full in modules else base_name)
    graph[module] = {t for t in targets if t in modules and t != module}
  return graph


def _cycles(graph):
  found, state = [], {}

  def visit(node, stack):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        found.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack)
    stack.pop()
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [])
  return found


def test_no_import_cycles():
  graph = import_graph()
  assert "mier_tf.replay.in_process" in graph["mier_tf.replay"]  # the graph sees imports
  assert not _cycles(graph), _cycles(graph)
