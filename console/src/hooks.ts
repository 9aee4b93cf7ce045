// Hooks the pages share.
import { useEffect, useRef } from "preact/hooks";

/// A trigger that calls `refresh` once, `ms` after the first call, however
/// many calls come meanwhile: many events, one read. A page that goes away
/// (signed out, navigated off) cancels what it had pending.
export function useThrottled(refresh: () => void, ms: number): () => void {
  const pending = useRef<number | null>(null);
  useEffect(
    () => () => {
      if (pending.current !== null) clearTimeout(pending.current);
    },
    [],
  );
  return () => {
    if (pending.current !== null) return;
    pending.current = window.setTimeout(() => {
      pending.current = null;
      refresh();
    }, ms);
  };
}
