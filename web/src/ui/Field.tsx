// Field.tsx: a labelled input.
export function Field(p: { label: string; value: string; onInput: (v: string) => void; placeholder?: string; width?: string; testid?: string; type?: string; onEnter?: () => void }) {
  return (
    <label class="field">
      <span>{p.label}</span>
      <input
        type={p.type ?? 'text'}
        value={p.value}
        placeholder={p.placeholder}
        style={p.width ? { width: p.width } : undefined}
        data-testid={p.testid}
        onInput={(e) => p.onInput((e.target as HTMLInputElement).value)}
        onKeyDown={(e) => e.key === 'Enter' && p.onEnter?.()}
      />
    </label>
  );
}
