/**
 * A cancellation flag with listeners: what the forwarding loop and the socket engine need of
 * an AbortSignal, without its cost on the hot path (an AbortController with a listener costs
 * about 1 µs here, and a request would need two). Listeners are objects with a method, so
 * registering one allocates nothing. The fetch engine bridges to real AbortSignals at its edge.
 */
export interface CancelListener {
  onCancel(): void;
}

export class Cancel {
  aborted = false;
  /** Why, when given: a ClientFault when the client broke a rule. */
  reason: unknown = undefined;
  private first: CancelListener | undefined;
  private rest: CancelListener[] | undefined;

  on(l: CancelListener): void {
    if (this.first === undefined) this.first = l;
    else (this.rest ??= []).push(l);
  }

  off(l: CancelListener): void {
    if (this.first === l) this.first = undefined;
    else if (this.rest !== undefined) {
      const i = this.rest.indexOf(l);
      if (i !== -1) this.rest.splice(i, 1);
    }
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const first = this.first;
    const rest = this.rest;
    this.first = undefined;
    this.rest = undefined;
    first?.onCancel();
    if (rest !== undefined) for (const l of rest) l.onCancel();
  }
}
