/**
 * The server adds one "written by the model" item to textDocument/completion for clients without
 * ghost text (Helix, plain completion UIs); it carries the detail "msa-lsp model". VS Code shows the
 * model's text as ghost text instead, and while the suggest popup is open VS Code only previews ghost
 * text that extends the popup's selected item, so that item would hide the ghost text. This drops it
 * from the popup while inline completion is on. Pure; extension.ts applies it as middleware.
 */

export const MODEL_ITEM_DETAIL = 'msa-lsp model';

interface WithDetail {
  detail?: string;
}

type CompletionResult<T> = T[] | { items: T[] } | null | undefined;

export function withoutModelItems<T extends WithDetail, R extends CompletionResult<T>>(result: R): R {
  if (!result) return result;
  if (Array.isArray(result)) {
    return result.filter((item) => item.detail !== MODEL_ITEM_DETAIL) as R;
  }
  const list = result as { items: T[] };
  list.items = list.items.filter((item) => item.detail !== MODEL_ITEM_DETAIL);
  return result;
}
