import sys, collections, subprocess
def load(fn, comm):
    samples=[]; cur=None
    for line in open(fn):
        if not line.strip():
            if cur: samples.append(cur); cur=None
            continue
        if not line.startswith('\t') and not line.startswith(' '):
            p=line.split(); cur=(p[0],[])
        else:
            p=line.strip().split(None,1); cur[1].append(p[1] if len(p)>1 else '?')
    if cur: samples.append(cur)
    return [st for c,st in samples if c==comm]
for fn in sys.argv[1:]:
    sub=load(fn,'devif-usb-io')
    user=[st for st in sub if not any(s in ('__GI___ioctl','__poll','__GI___poll') for s in st)]
    leaf=collections.Counter(st[0] for st in user)
    syms=list(leaf)
    out=subprocess.run(['swift','demangle','--simplified','--compact'],input='\n'.join(syms),capture_output=True,text=True).stdout.split('\n')
    dm=dict(zip(syms,out))
    print(fn, 'thread samples', len(sub), 'outside ioctl/poll', len(user))
    for s,n in leaf.most_common(30): print('  %5d %s'%(n, dm.get(s,s)[:150]))
