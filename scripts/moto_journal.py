"""Makes the local moto server cost what a request touches, not what the tables hold.

`install()` changes five things in the pinned moto (monkeypatched at start-up; nothing
under site-packages is edited):

1. `TransactWriteItems` rollback. Stock moto deep-copies every table a transaction names
   before it starts and, on cancellation, puts the copies in place of the tables. That
   costs O(table size) per transaction, and a cancellation leaves the table and its
   stream as new objects: a shard iterator taken before it reads the old, orphaned stream
   and never sees another record. Here the transaction journals, before each action, the
   one item the action may change and how long each touched table's stream was; a
   cancellation puts those items back and cuts the streams back, in place. Tables and
   streams keep their identity, a cancelled transaction leaves no stream record, and the
   checks, cancellation reasons and `ALL_OLD` items are those of moto's own code, which
   this mirrors step for step (`tests/python/test_moto_journal.py` runs both side by side).
2. Instance tracking. moto keeps every model object it ever made in a class-level list
   for its dashboard. For items, stream records and shard iterators that list holds each
   overwritten item version and copy forever; here they are not tracked (the
   `/moto-api/data.json` dashboard no longer lists them).
3. Shard iterators. Every `GetRecords` answer registers a new iterator and moto keeps
   them all; here the newest `ITERATORS_KEPT` are kept (DynamoDB's expire after 15
   minutes), the oldest dropped first.
4. Stream records. moto keeps each record, both item images included, as nested Python
   dictionaries, several times the size of their JSON; here each is kept as its JSON text
   and decoded when read (every record read from the stream is equal to moto's own).
5. Query on a table's own key. moto lists and sorts every item of the table to answer a
   `Query` for one partition key; here it is handed that partition's items only (the
   same items in the same order), so a Query costs the partition, not the table.

`settled_heap(app)` wraps the server's WSGI application so that Python's cyclic garbage
collector does not stall it as the data grows: every `SETTLE_EVERY` requests it collects
the young generations and freezes what is left (`gc.freeze`), so full collections walk only
what was allocated since, not the millions of long-lived objects the tables are made of.
Without it a full collection over a large emulator pauses it for seconds, past the SDK's
timeouts. Objects are still freed by reference counting when dropped.

It mirrors moto 5.2.5 (the version requirements.txt pins) and refuses any other.
"""

from __future__ import annotations

import copy
import gc
import json
from collections import OrderedDict
from typing import Any

MOTO_VERSION = "5.2.5"
ITERATORS_KEPT = 10_000
SETTLE_EVERY = 1_000

_installed = False


class _Untracked(list):
    """A class's `instances_tracked` that tracks nothing."""

    def append(self, _instance: Any) -> None:  # noqa: D401 - list protocol
        return None


class _BoundedIterators(OrderedDict):
    """The streams backend's shard-iterator registry, keeping only the newest entries."""

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > ITERATORS_KEPT:
            self.popitem(last=False)


def _key_of(table: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type == "Put":
        attrs = op["Item"]
        key = {table.hash_key_attr: attrs[table.hash_key_attr]}
        if table.range_key_attr is not None:
            key[table.range_key_attr] = attrs[table.range_key_attr]
        return key
    return op["Key"]


class _Journal:
    """What a transaction changed, to put back in place if it is cancelled."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, Any, Any, bool, Any]] = []
        self.streams: dict[int, tuple[Any, int]] = {}

    def note(self, backend: Any, table_name: str, key: dict[str, Any], op_type: str) -> None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        if op_type == "ConditionCheck":
            return
        try:
            table = backend.get_table(table_name)
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except Exception:  # noqa: BLE001 - the action itself reports a bad key
            return
        shard = table.stream_shard
        if shard is not None and id(shard) not in self.streams:
            self.streams[id(shard)] = (shard, len(shard.items))
        had_hash = hash_key in table.items
        if range_key is not None:
            current = table.items[hash_key].get(range_key) if had_hash else None
        else:
            current = table.items.get(hash_key) if had_hash else None
        # Put and Delete replace or remove the item object and leave it untouched; Update
        # changes it in place, so it is saved as a copy.
        saved = copy.deepcopy(current) if (op_type == "Update" and current is not None) else current
        self.items.append((table, hash_key, range_key, had_hash, saved))

    def roll_back(self) -> None:
        for table, hash_key, range_key, had_hash, saved in reversed(self.items):
            if range_key is not None:
                if saved is not None:
                    table.items[hash_key][range_key] = saved
                elif hash_key in table.items:
                    table.items[hash_key].pop(range_key, None)
                    if not had_hash and not table.items[hash_key]:
                        del table.items[hash_key]
            elif saved is not None:
                table.items[hash_key] = saved
            else:
                table.items.pop(hash_key, None)
        for shard, length in self.streams.values():
            del shard.items[length:]


def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto 5.2.5's `DynamoDBBackend.transact_write_items` with a journaled rollback."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    journal = _Journal()
    target_items: set[tuple[str, str]] = set()

    def check_unicity(table_name: str, key: dict[str, Any]) -> None:
        item = (str(table_name), str(dict(sorted(key.items()))))
        if item in target_items:
            raise MultipleTransactionsException()
        target_items.add(item)

    errors: list[tuple[Any, Any, Any]] = []
    for item in transact_items:
        original_item: dict[str, Any] | None = None
        if len(list(item.keys())) > 1:
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(item.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")

            table_name = op["TableName"]
            condition_expression = op.get("ConditionExpression")
            expression_attribute_names = op.get("ExpressionAttributeNames")
            expression_attribute_values = op.get("ExpressionAttributeValues")
            return_values_on_condition_check_failure = op.get("ReturnValuesOnConditionCheckFailure")

            if op_type == "Put":
                key = _key_of(self.get_table(table_name), op_type, op)
            else:
                key = op["Key"]

            check_unicity(table_name, key)
            # Before the read below: for a table with a sort key moto's read leaves an
            # empty partition behind, which the rollback removes again.
            journal.note(self, table_name, key, op_type)

            current = self.get_item(table_name, key)
            if condition_expression is not None:
                condition_op = get_filter_expression(
                    condition_expression, expression_attribute_names, expression_attribute_values
                )
                if not condition_op.expr(current):
                    if return_values_on_condition_check_failure == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)

            if op_type == "Put":
                self.put_item(
                    table_name,
                    op["Item"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Delete":
                self.delete_item(
                    table_name,
                    key,
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    condition_expression=condition_expression,
                    expression_attribute_names=expression_attribute_names,
                    expression_attribute_values=expression_attribute_values,
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            journal.roll_back()
            raise
        except ConditionalCheckFailed as e:
            errors.append(("ConditionalCheckFailed", str(e.message), original_item))
        except Exception as e:  # noqa: BLE001 - moto reports any other failure as a reason
            errors.append((type(e).__name__, str(e), original_item))

    if any(code is not None for code, _, _ in errors):
        journal.roll_back()
        raise TransactionCanceledException(errors)


def _compact_stream_records(stream_record_cls: Any) -> None:
    from moto.dynamodb.models.utilities import dynamo_json_dump

    original_init = stream_record_cls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        record = self.__dict__.pop("record")
        created = record["dynamodb"].pop("ApproximateCreationDateTime")
        self._created = created
        self._text = dynamo_json_dump(record).encode()

    def to_json(self: Any) -> dict[str, Any]:
        record = json.loads(self._text)
        record["dynamodb"]["ApproximateCreationDateTime"] = self._created
        return record

    stream_record_cls.__init__ = init
    stream_record_cls.to_json = to_json


def _partition_queries(table_cls: Any) -> None:
    original_query = table_cls.query

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key)
        if partition is None:
            items = []
        elif self.range_key_attr is not None:
            items = sorted(partition.values(), key=lambda item: item.range_key)
        else:
            items = [partition]
        # moto's query reads the table through all_items(); for this call it is this list.
        self.all_items = lambda: items
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    table_cls.query = query


def install() -> None:
    """Applies the five changes above to the imported moto; idempotent."""
    global _installed
    if _installed:
        return
    import moto
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import StreamRecord, Table
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"scripts/moto_journal.py mirrors moto {MOTO_VERSION}, found {moto.__version__}: "
            "review its transact_write_items before changing the pin"
        )
    DynamoDBBackend.transact_write_items = transact_write_items
    for cls in (Item, StreamRecord, ShardIterator):
        cls.instances_tracked = _Untracked()

    original_init = DynamoDBStreamsBackend.__init__

    def streams_init(self: Any, region_name: str, account_id: str) -> None:
        original_init(self, region_name, account_id)
        self.shard_iterators = _BoundedIterators()

    DynamoDBStreamsBackend.__init__ = streams_init
    _compact_stream_records(StreamRecord)
    _partition_queries(Table)
    _installed = True


def settle_heap() -> None:
    """Collects the young generations and moves every surviving object out of the
    collector's sight."""
    gc.collect(1)
    gc.freeze()


def settled_heap(app: Any) -> Any:
    """The WSGI application `app`, settling the heap every SETTLE_EVERY requests."""
    served = 0

    def application(environ: dict, start_response: Any) -> Any:
        nonlocal served
        served += 1
        if served % SETTLE_EVERY == 0:
            settle_heap()
        return app(environ, start_response)

    return application
