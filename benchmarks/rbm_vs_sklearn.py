"""Compare baselines.rbm.RBM with sklearn's BernoulliRBM under sklearn's update rule
(PCD-1, sampled negative visibles, no momentum / weight decay, zero visible bias init).
usage: python benchmarks/rbm_vs_sklearn.py DATA N_HIDDEN EPOCHS BATCH LR [THREADS]"""
import sys, time
import numpy as np, torch
from sklearn.neural_network import BernoulliRBM
from baselines.rbm import RBM, RBMConfig, RBMLayer
from genbench.data import DataConfig, load_data
from genbench.operators import Identity

data, hidden, epochs, batch, lr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
threads = int(sys.argv[6]) if len(sys.argv) > 6 else 1
torch.set_num_threads(threads)
from threadpoolctl import threadpool_limits
s = load_data(DataConfig(name=data))
v_train = ((s.train.flatten(1) + 1) / 2)
v_test = ((s.test.flatten(1) + 1) / 2)

def recon_error(layer, v):
    return (v - layer.visible_probs(layer.hidden_probs(v))).pow(2).mean().item()

def pseudo_ll(layer, v, draws=10):
    g = torch.Generator().manual_seed(0)
    return float(np.mean([layer.pseudo_likelihood(v, torch.randint(0, v.shape[1], (len(v),), generator=g)).mean().item()
                          for _ in range(draws)]))

rows = []
for seed in range(3):
    sk = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch, n_iter=epochs, random_state=seed)
    with threadpool_limits(threads):
        t0 = time.perf_counter(); sk.fit(v_train.double().numpy()); t_sk = (time.perf_counter() - t0) / epochs
    sk_layer = RBMLayer(torch.from_numpy(sk.components_).float(), torch.from_numpy(sk.intercept_visible_).float(),
                        torch.from_numpy(sk.intercept_hidden_).float())
    torch.manual_seed(seed)
    cfg = RBMConfig(latent_dim=hidden, lr=lr, n_epochs=epochs, batch_size=batch, cd_k=1, persistent=True,
                    sample_visibles=True, momentum=0.0, final_momentum=0.0, weight_decay=0.0, visible_bias_init="zero")
    t0 = time.perf_counter(); ours = RBM(cfg).fit(Identity().observe(s.train)); t_ours = (time.perf_counter() - t0) / epochs
    layer = ours.layers_[0]
    rows.append([recon_error(layer, v_test), recon_error(sk_layer, v_test), pseudo_ll(layer, v_test), pseudo_ll(sk_layer, v_test),
                 t_ours, t_sk])
    print(f"seed {seed}: recon mse ours {rows[-1][0]:.5f} sklearn {rows[-1][1]:.5f} | pseudo-LL ours {rows[-1][2]:.2f} "
          f"sklearn {rows[-1][3]:.2f} | s/epoch ours {t_ours:.3f} sklearn {t_sk:.3f}", flush=True)
r = np.mean(rows, 0)
print(f"{data} train {len(v_train)} test {len(v_test)} D={v_train.shape[1]} hidden={hidden} epochs={epochs} batch={batch} lr={lr} threads={threads}")
print(f"MEAN over 3 seeds: test recon mse ours {r[0]:.5f} sklearn {r[1]:.5f} (ratio {r[0]/r[1]:.3f}) | test pseudo-LL ours {r[2]:.2f} "
      f"sklearn {r[3]:.2f} | s/epoch ours {r[4]:.3f} sklearn {r[5]:.3f}")
