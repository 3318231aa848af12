// Editor.tsx: the PromQL editor (CodeMirror 6 with codemirror-promql):
// highlighting, autocompletion from the API, inline syntax errors.
// Enter runs the query; Shift+Enter adds a line.
import { useEffect, useRef } from 'preact/hooks';
import { EditorView, keymap, placeholder, highlightSpecialChars, drawSelection } from '@codemirror/view';
import { EditorState, Prec } from '@codemirror/state';
import { history, defaultKeymap, historyKeymap, insertNewline } from '@codemirror/commands';
import { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap } from '@codemirror/autocomplete';
import { lintKeymap } from '@codemirror/lint';
import { syntaxHighlighting, bracketMatching, HighlightStyle } from '@codemirror/language';
import { tags } from '@lezer/highlight';
import { promqlExtension } from './completion';

const highlight = HighlightStyle.define([
  { tag: tags.number, color: 'var(--hl-number)' },
  { tag: tags.string, color: 'var(--hl-string)' },
  { tag: tags.keyword, color: 'var(--hl-keyword)', fontWeight: '600' },
  { tag: tags.function(tags.variableName), color: 'var(--hl-function)' },
  { tag: tags.labelName, color: 'var(--hl-label)' },
  { tag: tags.operator, color: 'var(--hl-operator)' },
  { tag: tags.modifier, color: 'var(--hl-keyword)' },
  { tag: tags.comment, color: 'var(--fg-muted)', fontStyle: 'italic' },
  { tag: tags.invalid, color: 'var(--danger)' },
]);

export interface EditorProps {
  value: string;
  onChange: (v: string) => void;
  onRun: () => void;
}

export function Editor(p: EditorProps) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const cb = useRef(p);
  cb.current = p;

  useEffect(() => {
    const promql = promqlExtension();
    const v = new EditorView({
      parent: host.current!,
      state: EditorState.create({
        doc: p.value,
        extensions: [
          highlightSpecialChars(),
          history(),
          drawSelection(),
          bracketMatching(),
          closeBrackets(),
          autocompletion({ activateOnTyping: true }),
          syntaxHighlighting(highlight),
          placeholder('Expression (press Enter to run, Shift+Enter for a new line)'),
          EditorView.lineWrapping,
          EditorView.contentAttributes.of({ 'aria-label': 'PromQL expression', 'data-testid': 'expr' }),
          Prec.highest(
            keymap.of([
              { key: 'Enter', run: () => (cb.current.onRun(), true) },
              { key: 'Shift-Enter', run: insertNewline },
              { key: 'Mod-Enter', run: () => (cb.current.onRun(), true) },
            ]),
          ),
          keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...completionKeymap, ...lintKeymap]),
          promql.asExtension(),
          EditorView.updateListener.of((u) => {
            if (u.docChanged) cb.current.onChange(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    // The view, reachable from the page (the browser tests type through it).
    (host.current as HTMLElement & { editorView?: EditorView }).editorView = v;
    return () => {
      v.destroy();
      promql.destroy();
    };
  }, []);

  // An outside change (history, a link) replaces the text.
  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== p.value) {
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: p.value } });
    }
  }, [p.value]);

  return <div class="editor" ref={host} />;
}
