// Seeds: what repositories' setups made (node_modules, a virtualenv), kept
// by the control plane for every worker; each can be dropped, so the next
// step that needs it runs its setup again.
import { useEffect, useState } from "preact/hooks";

import { call, get, query, when } from "./api";
import { ConfirmButton } from "./confirm";

interface Seed {
  key: string;
  tenant: string;
  repo: string;
  paths: string[];
  files: number;
  bytes: number;
  storedBytes: number;
  buildMillis: number;
  builtAt?: string;
  storedAt?: string;
  uses: number;
  usedAt?: string;
}

/// `706.2 MiB`, as the CLI says it.
export function bytes(n: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  if (n < 1024) return `${n} B`;
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export function SeedsPage({ repo }: { repo?: string }) {
  const [seeds, setSeeds] = useState<Seed[]>([]);
  const [error, setError] = useState("");
  const load = () =>
    get<{ seeds: Seed[] }>(`/seeds${query({ repo })}`).then(
      (list) => {
        setSeeds(list.seeds);
        setError("");
      },
      (e) => setError(e.message),
    );
  useEffect(() => {
    load();
  }, [repo]);
  const drop = async (key: string) => {
    try {
      await call("DELETE", `/seeds/${encodeURIComponent(key)}`);
      await load();
    } catch (e: any) {
      setError(e.message);
    }
  };
  return (
    <div>
      <h2>Seeds</h2>
      <p class="empty">
        What each repository's setup made, kept for every worker: a step whose checkout has the same key files gets it
        instead of running the setup.
      </p>
      {error && <p class="error">{error}</p>}
      <table data-test="seeds">
        <thead>
          <tr>
            <th>repository</th>
            <th>key</th>
            <th>paths</th>
            <th>size</th>
            <th>setup took</th>
            <th>built</th>
            <th>uses</th>
            <th>last used</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {seeds.map((s) => (
            <tr data-seed={s.key}>
              <td>
                {s.repo}
                <div class="id">{s.tenant}</div>
              </td>
              <td class="id" title={s.key}>
                {s.key.slice(0, 12)}
              </td>
              <td>{s.paths.join(", ")}</td>
              <td title={`${s.files} files; ${bytes(s.storedBytes)} packed`}>{bytes(s.bytes)}</td>
              <td>{(s.buildMillis / 1000).toFixed(1)}s</td>
              <td>{when(s.builtAt)}</td>
              <td data-test="seed-uses">{s.uses}</td>
              <td>{when(s.usedAt)}</td>
              <td>
                <ConfirmButton
                  ask="drop"
                  confirm="drop it everywhere"
                  askTest="drop-seed"
                  confirmTest="confirm-drop"
                  onConfirm={() => drop(s.key)}
                />
              </td>
            </tr>
          ))}
          {!seeds.length && (
            <tr>
              <td colSpan={9} class="empty">
                No seeds yet: a task whose repository has a setup makes one.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
