// Hooks the pages share.
import { useRef } from "preact/hooks";

/// A trigger that calls `refresh` once, `ms` after the first call, however
/// many calls come meanwhile: many events, one read.
export function useThrottled(refresh: () => void, ms: number): () => void {
  const pending = useRef<number | null>(null);
  return () => {
    if (pending.current !== null) return;
    pending.current = window.setTimeout(() => {
      pending.current = null;
      refresh();
    }, ms);
  };
}
