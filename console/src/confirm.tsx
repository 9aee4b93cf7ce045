// A change that takes a second click, so one stray click changes nothing.
import { useState } from "preact/hooks";

export function ConfirmButton(props: {
  ask: string;
  confirm: string;
  askTest: string;
  confirmTest: string;
  onConfirm: () => void;
}) {
  const [asked, setAsked] = useState(false);
  return asked ? (
    <span>
      <button onClick={props.onConfirm} data-test={props.confirmTest}>
        {props.confirm}
      </button>{" "}
      <button class="link" onClick={() => setAsked(false)}>
        keep
      </button>
    </span>
  ) : (
    <button class="link" onClick={() => setAsked(true)} data-test={props.askTest}>
      {props.ask}
    </button>
  );
}
