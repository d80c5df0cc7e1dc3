# Draws BENCH.md's privacy-utility plot from the sweep's table (BENCH.md, "Privacy and utility"):
#   python3 docs/plot_privacy_utility.py sweep.tsv docs/privacy_utility.svg
import sys
rows=[l.rstrip('\n').split('\t') for l in open(sys.argv[1]) if l.strip() and not l.startswith('dataset') and not l.startswith('DONE')]
series={}; base={}
for ds,z,r,eps,acc,cen in rows:
    if z=='none': base[ds]=float(acc); continue
    series.setdefault(ds,[]).append((float(eps),float(acc),z))
W,H=720,440; L,R,T,B=70,170,30,60
xmax=6.0
ymin,ymax=0.5,1.0
def X(e): return L+(W-L-R)*min(e,xmax)/xmax
def Y(a): return T+(H-T-B)*(ymax-a)/(ymax-ymin)
col={'breast-cancer':'#1f77b4','digits':'#d62728'}
out=[f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
     f'<rect width="{W}" height="{H}" fill="white"/>']
for i in range(0,7):
    x=X(i); out.append(f'<line x1="{x}" y1="{T}" x2="{x}" y2="{H-B}" stroke="#ddd"/><text x="{x}" y="{H-B+18}" text-anchor="middle">{i}</text>')
for k in range(0,11):
    a=ymin+k*0.05; y=Y(a); out.append(f'<line x1="{L}" y1="{y}" x2="{W-R}" y2="{y}" stroke="#ddd"/><text x="{L-8}" y="{y+4}" text-anchor="end">{a*100:.0f}%</text>')
out.append(f'<text x="{(L+W-R)/2}" y="{H-15}" text-anchor="middle">ε spent (δ = 1e-5), over a sweep of the noise multiplier z</text>')
out.append(f'<text x="18" y="{(T+H-B)/2}" text-anchor="middle" transform="rotate(-90 18 {(T+H-B)/2})">final test accuracy</text>')
ly=T+10
for ds,pts in series.items():
    pts.sort()
    c=col.get(ds,'black')
    out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'%(c,' '.join(f'{X(e):.1f},{Y(a):.1f}' for e,a,z in pts)))
    for e,a,z in pts:
        out.append(f'<circle cx="{X(e):.1f}" cy="{Y(a):.1f}" r="4" fill="{c}"/><text x="{X(e)+6:.1f}" y="{Y(a)-6:.1f}" fill="{c}" font-size="10">z={z}</text>')
    if ds in base:
        y=Y(base[ds]); out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W-R}" y2="{y:.1f}" stroke="{c}" stroke-dasharray="6,4"/>')
    out.append(f'<line x1="{W-R+10}" y1="{ly}" x2="{W-R+30}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{W-R+35}" y="{ly+4}">{ds}</text>')
    ly+=20
    out.append(f'<line x1="{W-R+10}" y1="{ly}" x2="{W-R+30}" y2="{ly}" stroke="{c}" stroke-dasharray="6,4"/><text x="{W-R+35}" y="{ly+4}">no privacy</text>')
    ly+=24
out.append('</svg>')
open(sys.argv[2],'w').write('\n'.join(out))
print('ok')
