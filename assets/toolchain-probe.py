# The toolchain probe: run by tmax in a fresh container of a task's image (never in the agent's container), with
# the verifier's environment and working directory, by the Python the verifier's PATH resolves. It prints one
# JSON object (after a marker line) describing what the verifier will execute and import: commands found on
# PATH, the shared libraries they load, sys.path, every module file the test runner (and the tests' own
# third-party imports) load, the stdlib's top-level names, the CA files. tmax compares the agent's container
# (or the verifier's snapshot) with this, through the engine only. See src/trial/toolchain.ts.
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

args = json.loads(sys.argv[1])
out = {"path": os.environ.get("PATH", ""), "commands": {}, "files": [], "python": None, "errors": []}
files = set()


def add(p):
    if p and os.path.isabs(p):
        files.add(os.path.normpath(p))
        # the links on the way count too: a chain like /usr/bin/python3 -> python3.11
        while os.path.islink(p):
            t = os.readlink(p)
            p = os.path.normpath(os.path.join(os.path.dirname(p), t))
            files.add(p)


def libs_of(path):
    try:
        r = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=20)
    except Exception:
        return
    for line in r.stdout.splitlines():
        parts = line.split()
        for w in parts:
            if w.startswith("/") and not w.startswith("(0x"):
                add(w)
                add(os.path.realpath(w))


for name in args["commands"]:
    found = shutil.which(name)
    if not found:
        continue
    out["commands"][name] = found
    add(found)
    real = os.path.realpath(found)
    add(real)
    try:
        with open(real, "rb") as f:
            head = f.read(256)
    except OSError:
        continue
    if head.startswith(b"\x7fELF"):
        libs_of(real)
    elif head.startswith(b"#!"):
        interp = head[2:].split(b"\n")[0].split()
        if interp:
            add(interp[0].decode("utf8", "replace"))
            add(os.path.realpath(interp[0].decode("utf8", "replace")))
            if os.path.exists(interp[0]):
                libs_of(os.path.realpath(interp[0].decode("utf8", "replace")))

py = {}
cwd = os.getcwd()
py["executable"] = sys.executable
add(sys.executable)
add(os.path.realpath(sys.executable))
libs_of(os.path.realpath(sys.executable))
py["sys_path"] = [os.path.abspath(p) if p else cwd for p in sys.path]

import sysconfig  # noqa: E402

stdlib = sysconfig.get_paths().get("stdlib")
names = set(sys.builtin_module_names) | set(getattr(sys, "stdlib_module_names", ()))
for d in {stdlib, sysconfig.get_paths().get("platstdlib"), os.path.join(stdlib or "", "lib-dynload")}:
    if d and os.path.isdir(d):
        for e in os.listdir(d):
            if e in ("site-packages", "dist-packages", "__pycache__"):
                continue
            base = e.split(".")[0]
            if base.isidentifier() and (e.endswith((".py", ".pyc", ".so")) or os.path.isfile(os.path.join(d, e, "__init__.py"))):
                names.add(base)
py["stdlib"] = stdlib
py["stdlib_names"] = sorted(names)

# the test runner as the verifier starts it: pytest with its plugins, on an empty dir; then the tests' imports
os.environ.pop("PYTEST_ADDOPTS", None)
real_out, real_err = os.dup(1), os.dup(2)
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 1)
os.dup2(devnull, 2)


def on_alarm(signum, frame):
    raise TimeoutError("import took too long")


signal.signal(signal.SIGALRM, on_alarm)
try:
    signal.alarm(60)
    import pytest

    with tempfile.TemporaryDirectory() as empty:
        pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", empty, empty])
    py["pytest"] = True
except BaseException as e:  # noqa: BLE001 - any failure only narrows what is compared
    py["pytest"] = False
    out["errors"].append("pytest: %s" % e)
finally:
    signal.alarm(0)
for name in args.get("imports", []):
    try:
        signal.alarm(20)
        importlib.import_module(name)
    except BaseException as e:  # noqa: BLE001
        out["errors"].append("%s: %s" % (name, type(e).__name__))
    finally:
        signal.alarm(0)
sys.stdout.flush()
os.dup2(real_out, 1)
os.dup2(real_err, 2)

try:
    import importlib.util as iu
except ImportError:
    iu = None
modules = []
for name, m in sorted(sys.modules.items()):
    f = getattr(m, "__file__", None)
    if not isinstance(f, str) or not os.path.isabs(f):
        continue
    f = os.path.normpath(f)
    modules.append([name, f])
    files_py = [f]
    if iu and f.endswith(".py"):
        try:
            files_py.append(iu.cache_from_source(f))
        except Exception:
            pass
    py.setdefault("module_files", []).extend(x for x in files_py if os.path.exists(x))
py["modules"] = modules
try:
    with open("/proc/self/maps") as maps:
        for line in maps:
            p = line.split()[-1] if len(line.split()) >= 6 else ""
            if p.startswith("/") and ".so" in p:
                add(p)
except OSError:
    pass
for mod in ("ssl", "certifi"):
    if mod not in sys.modules:
        continue
    try:
        if mod == "ssl":
            v = sys.modules["ssl"].get_default_verify_paths()
            for p in (v.cafile, v.openssl_cafile):
                if p and os.path.exists(p):
                    add(p)
                    add(os.path.realpath(p))
        else:
            add(sys.modules["certifi"].where())
    except Exception:
        pass
out["python"] = py
out["files"] = sorted(files)
print("--tmax-toolchain--")
print(json.dumps(out))
