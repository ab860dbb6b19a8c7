# bench/gensim_w2v.py CORPUS QUESTIONS [THREADS]: the reference run for w2v.
# gensim 4 Word2Vec, skip-gram, the same settings as w2v's defaults; the
# corpus is re-wrapped at 1000 tokens per line first (gensim's corpus_file
# mode stops at the first end of line of a one-line corpus: see the data
# README).  Run with /usr/bin/python3 (Debian's python3-gensim).
import os, sys, tempfile, time, gzip
from gensim.models import Word2Vec
src, qf = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
op = gzip.open if src.endswith('.gz') else open
with op(src, 'rt') as f:
    toks = f.read().split()
fd, wrapped = tempfile.mkstemp(suffix='.txt')   # the corpus_file trap: 1000 tokens per line
os.close(fd)
with open(wrapped, 'w') as f:
    for i in range(0, len(toks), 1000):
        f.write(' '.join(toks[i:i+1000])); f.write('\n')
del toks
m = Word2Vec(vector_size=100, window=5, negative=5, hs=0, sg=1, sample=1e-4, min_count=5, workers=threads, alpha=0.025)
m.build_vocab(corpus_file=wrapped)
invocab = sum(m.wv.get_vecattr(w, 'count') for w in m.wv.index_to_key)
t0 = time.time()
m.train(corpus_file=wrapped, total_examples=m.corpus_count, total_words=m.corpus_total_words, epochs=5)
t = time.time() - t0
score, _ = m.wv.evaluate_word_analogies(qf, restrict_vocab=30000)
print(f"gensim: train {t:.1f} s, {invocab*5/t:.0f} in-vocab words/s ({m.corpus_total_words*5/t:.0f} raw words/s), analogy {100*score:.2f}%")
os.unlink(wrapped)
