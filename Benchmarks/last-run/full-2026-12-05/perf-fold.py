import sys, collections, subprocess
samples=[]
cur=None
for line in open(sys.argv[1]):
    if not line.strip():
        if cur: samples.append(cur); cur=None
        continue
    if not line.startswith('\t') and not line.startswith(' '):
        p=line.split()
        cur=(p[0],int(p[1]),[])
    else:
        p=line.strip().split(None,1)
        cur[2].append(p[1] if len(p)>1 else '?')
if cur: samples.append(cur)
syms=set(s for _,_,st in samples for s in st)
syms=sorted(syms)
out=subprocess.run(['swift','demangle','--simplified','--compact'],input='\n'.join(syms),capture_output=True,text=True).stdout.split('\n')
dm=dict(zip(syms,out))
def short(s):
    d=dm.get(s,s)
    return d[:150]
comm=collections.Counter(c for c,_,_ in samples)
print('samples per comm', comm)
# per comm inclusive
target=sys.argv[2] if len(sys.argv)>2 else 'devif-assembly'
sub=[st for c,_,st in samples if c==target]
idle=sum(1 for st in sub if st and ('futex' in st[0] or 'sem_wait' in st[0]))
print(target, len(sub), 'idle-ish top frames', idle)
inc=collections.Counter()
for st in sub:
    for s in set(st): inc[short(s)]+=1
for s,n in inc.most_common(70): print('%5d %5.1f%% %s'%(n,100*n/len(sub),s))

def children(frame_sub, depth=1):
    c=collections.Counter()
    tot=0
    for st in sub:
        names=[short(s) for s in st]
        for i,n in enumerate(names):
            if frame_sub in n:
                tot+=1
                c[' <- '.join(reversed(names[max(0,i-depth):i])) if i>0 else '(self)']+=1
                break
    print('==', frame_sub, tot)
    for k,v in c.most_common(25): print('  %4d %s'%(v,k[:260]))
import os
for f in os.environ.get('FRAMES','').split('|'):
    if f: children(f)

def parents(frame_sub, depth=2):
    c=collections.Counter(); tot=0
    for st in sub:
        names=[short(s) for s in st]
        for i,n in enumerate(names):
            if frame_sub in n:
                tot+=1
                c[' <- '.join(names[i+1:i+1+depth])]+=1
                break
    print('== parents of', frame_sub, tot)
    for k,v in c.most_common(12): print('  %4d %s'%(v,k[:300]))
for f in os.environ.get('PARENTS','').split('|'):
    if f: parents(f, int(os.environ.get('DEPTH','2')))
