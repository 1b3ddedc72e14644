# How many completed epochs of a run folder lack their metrics.jsonl line: the epochs that the newest readable
# checkpoint (last.ckpt, else last.prev.ckpt) has completed, against the lines the file holds. Used by kill-harness.sh.
import json, sys, os, struct
folder = sys.argv[1]
def epoch_of(path):
    with open(path, 'rb') as f:
        if f.read(8) not in (b'IGCKPT02', b'IGCKPT01'): return None
        n = struct.unpack('<q', f.read(8))[0]
        return json.loads(f.read(n))['Epoch']
ep = None
for name in ('last.ckpt', 'last.prev.ckpt'):
    p = os.path.join(folder, name)
    if os.path.exists(p):
        try: ep = epoch_of(p); break
        except Exception: continue
if ep is None: print(0); sys.exit(0)
lines = []
mp = os.path.join(folder, 'metrics.jsonl')
if os.path.exists(mp):
    for l in open(mp, encoding='utf-8', errors='replace'):
        try: lines.append(json.loads(l)['epoch'])
        except Exception: pass
missing = [e for e in range(1, ep + 1) if e not in lines]
print(len(missing))
